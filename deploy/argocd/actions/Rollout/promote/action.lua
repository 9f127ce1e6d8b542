-- `headway promote`: resume a pause, or move the canary past its current step (Argo's promote).
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
if status.pauseConditions ~= nil and #status.pauseConditions > 0 then
  obj.status.pauseConditions = nil
  return obj
end
if paused then
  return obj
end
local canary = obj.spec.strategy and obj.spec.strategy.canary
local steps = (canary and canary.steps) or {}
if canary ~= nil and status.currentStepIndex ~= nil and status.currentStepIndex < #steps then
  obj.status.currentStepIndex = status.currentStepIndex + 1
  return obj
end
error("nothing to promote: the rollout is not paused and has no step to skip")
