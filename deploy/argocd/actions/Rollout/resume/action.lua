-- `headway resume`: undo a manual pause (a pause step needs promote).
if obj.spec.paused == true then
  obj.spec.paused = false
end
return obj
