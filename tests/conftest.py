import flows.compiler
import flows.physical

# Every flow the compiler emits in a test keeps to the declared pipeline (flows.conformance).
flows.compiler.check_flows = True
flows.physical.check_flows = True
