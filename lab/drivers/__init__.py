"""How the lab reaches its nodes (`exec`), adapts built images (`images`) and drives each initiator kind
(`initiators`: the compatibility checks)."""
