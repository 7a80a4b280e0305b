"""The OpenFlow 1.3 codec: one vocabulary of match fields (vocabulary), and Flow data to and
from wire bytes (wire, stats), os-ken messages (os_ken) and ovs-ofctl's notation (notation)."""
