-- `headway restart`: replace every pod of the live revisions, one at a time (spec.restartAt, RFC 3339 UTC).
obj.spec.restartAt = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
