"""Built-in recurrent models. Every module here is a plugin file scanned by the registry."""
