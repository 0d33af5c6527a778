"""Development tools, not shipped in the production image: ``smsdispatch run`` (the whole stack
as child processes) and the local webhook inbox it starts."""
