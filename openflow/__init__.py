"""The OpenFlow 1.3 codec. Every match field is declared once (vocabulary) and every action
once (actions); from them, Flow data (flow) goes to and from wire bytes (wire, stats; field
values in values), os-ken messages (os_ken) and ovs-ofctl's notation (notation). Pure."""
