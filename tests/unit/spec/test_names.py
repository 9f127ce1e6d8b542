"""Object names checked as Kubernetes checks them (DNS-1123), and manifests refused at load when theirs are not."""

from __future__ import annotations

import pytest

from headway.spec import names
from headway.spec.load import load_text
from tests.unit.spec.manifests import dump, lint, rollout


@pytest.mark.parametrize("value", ["web", "a", "web-2", "web.v2", "0web", "a" * 253, "x." * 126 + "y"])
def test_valid_object_names(value: str) -> None:
    assert names.subdomain_problem(value) is None
    assert names.check_name(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "Web", "web_2", "-web", "web-", "web.", ".web", "web..v2", "a/b", "abort?", "x y", "web#1", "a" * 254, "é"],
)
def test_invalid_object_names_say_the_rule(value: str) -> None:
    with pytest.raises(names.InvalidNameError) as raised:
        names.check_name(value, "NAME")
    message = str(raised.value)
    assert message.startswith(f"NAME: {value!r} is not a valid name: ")
    assert "lowercase RFC 1123 subdomain" in message


@pytest.mark.parametrize("value", ["shop", "kube-system", "a" * 63])
def test_valid_namespaces(value: str) -> None:
    assert names.check_namespace(value) == value


@pytest.mark.parametrize("value", ["", "Shop", "shop.eu", "a" * 64, "shop/web"])
def test_invalid_namespaces_say_the_rule(value: str) -> None:
    with pytest.raises(names.InvalidNameError, match="lowercase RFC 1123 label"):
        names.check_namespace(value, "--namespace")


def test_a_key_is_a_name_or_namespace_slash_name() -> None:
    assert names.check_key("web") == (None, "web")
    assert names.check_key("shop/web") == ("shop", "web")
    with pytest.raises(names.InvalidNameError, match=r"NAME: 'abort\?' is not a valid name"):
        names.check_key("sur/abort?", "NAME")
    with pytest.raises(names.InvalidNameError, match="namespace part"):
        names.check_key("Shop/web", "NAME")
    with pytest.raises(names.InvalidNameError, match="namespace part"):
        names.check_key("a/b/c", "NAME")


def test_a_manifest_with_a_name_kubernetes_refuses_is_an_error_at_its_field() -> None:
    bad = rollout("sur/abort?")
    assert lint(bad) == [
        "rollout.yaml: Rollout/sur/abort?: metadata.name: 'sur/abort?' is not a valid name: it must be "
        f"{names.SUBDOMAIN_RULE}"
    ]
    [document] = load_text(dump(bad), "rollout.yaml")
    assert document.model is None  # nothing to apply


def test_a_manifest_with_a_bad_namespace_is_an_error_at_its_field() -> None:
    bad = rollout("web")
    bad["metadata"]["namespace"] = "Shop_EU"
    problems = lint(bad)
    assert len(problems) == 1 and "metadata.namespace: 'Shop_EU' is not a valid namespace" in problems[0]
    assert "lowercase RFC 1123 label" in problems[0]


@pytest.mark.parametrize("value", ["web\n", "web\r", "shop\n"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(value: str) -> None:
    assert names.subdomain_problem(value) is not None
    assert names.label_problem(value) is not None
