"""The plugin system: the hook contract (hookspecs), the adapter base class and the manager."""
