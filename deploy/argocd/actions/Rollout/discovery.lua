-- Which of Headway's Rollout actions Argo CD offers now (resource.customizations.actions.headway.dev_Rollout).
-- The same rules as `headway promote|abort|retry|pause|resume|restart`: an action that the CLI would refuse is
-- shown disabled.
local actions = {}
local status = obj.status or {}
local paused = obj.spec.paused == true
local promoted = status.currentPodHash ~= nil and status.currentPodHash == status.stableRS
local aborted = status.abort == true
local waiting = status.pauseConditions ~= nil and #status.pauseConditions > 0
local canary = obj.spec.strategy and obj.spec.strategy.canary
local steps = (canary and canary.steps) or {}
local next_step = canary ~= nil and status.currentStepIndex ~= nil and status.currentStepIndex < #steps
local movable = not aborted and (paused or not promoted)

actions["promote"] = {["disabled"] = not (movable and (paused or waiting or next_step))}
actions["promote-full"] = {["disabled"] = not movable}
actions["abort"] = {["disabled"] = aborted or promoted}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
actions["restart"] = {["disabled"] = false}
return actions
