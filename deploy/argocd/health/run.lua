-- Argo CD health of a Headway AnalysisRun or Experiment (resource.customizations.health.headway.dev_AnalysisRun
-- and ...headway.dev_Experiment): both carry Argo's AnalysisPhase. Pending and Running are in progress; Successful
-- is healthy; Failed and Error are degraded; Inconclusive needs a person to decide (Unknown, as Argo CD reports
-- Argo's own runs).
local hs = {}
local noun = "Analysis run"
if obj.kind == "Experiment" then
  noun = "Experiment"
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the " .. string.lower(noun) .. " to start"
  return hs
end

local function with_message(default)
  if status.message ~= nil and status.message ~= "" then
    return default .. ": " .. status.message
  end
  return default
end

local phase = status.phase
if phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = with_message(noun .. " is " .. string.lower(phase))
elseif phase == "Successful" then
  hs.status = "Healthy"
  hs.message = with_message(noun .. " completed successfully")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = with_message(noun .. " failed")
elseif phase == "Error" then
  hs.status = "Degraded"
  hs.message = with_message(noun .. " had an error")
elseif phase == "Inconclusive" then
  hs.status = "Unknown"
  hs.message = with_message(noun .. " was inconclusive")
else
  hs.status = "Unknown"
  hs.message = "Unknown " .. string.lower(noun) .. " phase: " .. tostring(phase)
end
return hs
