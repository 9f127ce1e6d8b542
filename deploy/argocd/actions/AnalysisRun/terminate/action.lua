-- Stop a running analysis: its metrics stop being measured and the run ends with what it has.
obj.spec.terminate = true
return obj
