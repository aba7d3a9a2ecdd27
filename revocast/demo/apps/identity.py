"""The reference identity service wired to a real :class:`producer.Publisher` (ASGI app).

Settings come from the environment: ``REVOCAST_IDP_*`` for the service, ``REVOCAST_*`` for
the publisher, ``REVOCAST_DEMO_USERS`` for the demo accounts.
"""

from __future__ import annotations

import atexit
import os

from identity_service import IdentitySettings, create_app
from producer import Publisher, PublisherSettings
from revocast.demo._stack import DEMO_PASSWORD

publisher = Publisher(PublisherSettings.from_env())
atexit.register(publisher.close)
users = {u: DEMO_PASSWORD for u in os.environ.get("REVOCAST_DEMO_USERS", "").split(",") if u}
app = create_app(IdentitySettings.from_env(), publisher, users=users)
