-- Argo CD health of a Headway Rollout (resource.customizations.health.headway.dev_Rollout).
-- Reads only what Headway's controller writes: observedGeneration (a string, as Argo writes it), phase, message,
-- abort, pauseConditions, spec.paused and the InvalidSpec condition. A status written for an older generation is
-- Progressing, so Argo CD never shows the previous release's Healthy right after a sync.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function reasons(status)
  local found = {}
  if status.pauseConditions ~= nil then
    for _, c in ipairs(status.pauseConditions) do
      table.insert(found, c.reason)
    end
  end
  return table.concat(found, ", ")
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the rollout to be observed by the controller"
  return hs
end

local invalid = condition(status, "InvalidSpec")
if invalid ~= nil and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = "InvalidSpec: " .. (invalid.message or "")
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and tostring(status.observedGeneration) ~= tostring(generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the rollout spec update to be observed"
  return hs
end

if status.abort == true or status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = status.message or "Rollout aborted"
  return hs
end

if obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Rollout is paused manually"
  return hs
end

local paused = reasons(status)
if paused ~= "" or status.phase == "Paused" then
  hs.status = "Suspended"
  if paused ~= "" then
    hs.message = "Rollout is paused: " .. paused
  else
    hs.message = "Rollout is paused: " .. (status.message or "")
  end
  return hs
end

if status.phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = "Rollout is healthy"
  return hs
end

hs.status = "Progressing"
if status.message ~= nil and status.message ~= "" then
  hs.message = "Waiting for the rollout to finish: " .. status.message
else
  hs.message = "Waiting for the rollout to finish"
end
return hs
