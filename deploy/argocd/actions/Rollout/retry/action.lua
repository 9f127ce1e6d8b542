-- `headway retry`: start an aborted update again from its first step.
local status = obj.status
if status == nil or status.abort ~= true then
  error("retry applies to an aborted rollout only")
end
status.abort = false
status.abortedAt = nil
status.currentStepIndex = 0
status.pauseConditions = nil
status.controllerPause = false
status.promoteFull = false
if status.canary ~= nil then
  status.canary.currentStepAnalysisRunStatus = nil
  status.canary.currentBackgroundAnalysisRunStatus = nil
  status.canary.currentExperiment = nil
end
if status.blueGreen ~= nil then
  status.blueGreen.prePromotionAnalysisRunStatus = nil
  status.blueGreen.postPromotionAnalysisRunStatus = nil
end
return obj
