"""The client's version and the REST API version it speaks.

``MAJOR.MINOR`` of the distribution's version is the API version (``/v2.1`` → ``2.1.x``), so
``pip install "smsdispatch-client~=2.1.0"`` picks the newest client for the v2.1 API and never
one for another API version. The last number counts releases of the client for that API.
"""

__version__ = "2.1.0"
API_VERSION = ".".join(__version__.split(".")[:2])
API_PREFIX = f"/v{API_VERSION}"
