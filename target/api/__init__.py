"""The management API of a running target: the Manager (live changes) and its HTTP face (aiohttp)."""
