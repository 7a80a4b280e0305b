"""Who may change the network: REST bearer tokens, and TLS for REST, OpenFlow and OVSDB."""
