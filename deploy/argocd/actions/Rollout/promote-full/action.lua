-- `headway promote --full`: skip every remaining step and analysis.
local status = obj.status or {}
if status.abort == true then
  error("rollout is aborted: use retry to start the update again")
end
local paused = obj.spec.paused == true
if status.currentPodHash ~= nil and status.currentPodHash == status.stableRS and not paused then
  error("nothing to promote: the rollout is already fully promoted")
end
if paused then
  obj.spec.paused = false
end
if obj.status == nil then
  obj.status = {}
end
obj.status.promoteFull = true
obj.status.pauseConditions = nil
return obj
