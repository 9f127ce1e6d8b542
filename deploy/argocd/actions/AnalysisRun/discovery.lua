-- Headway AnalysisRun actions for Argo CD (resource.customizations.actions.headway.dev_AnalysisRun).
local actions = {}
local phase = (obj.status and obj.status.phase) or "Pending"
local done = phase == "Successful" or phase == "Failed" or phase == "Error" or phase == "Inconclusive"
actions["terminate"] = {["disabled"] = done or obj.spec.terminate == true}
return actions
