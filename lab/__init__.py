"""sanlab lab orchestrator."""
