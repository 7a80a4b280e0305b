import flows.compiler

# Every flow the compiler emits in a test keeps to the declared pipeline (flows.conformance).
flows.compiler.check_flows = True
