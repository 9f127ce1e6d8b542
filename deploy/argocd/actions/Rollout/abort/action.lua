-- `headway abort`: all traffic back to stable; the controller records when and scales the canary down.
local status = obj.status or {}
if status.currentPodHash ~= nil and status.currentPodHash == status.stableRS then
  error("nothing to abort: no update is in progress")
end
if obj.status == nil then
  obj.status = {}
end
obj.status.abort = true
return obj
