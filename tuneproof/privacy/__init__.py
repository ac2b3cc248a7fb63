"""Privacy evidence: the protocol's ``privacy:`` section and the memorisation audits it asks for."""
