"""The NATS bridge: actor mailboxes on subjects, and the embedded nats-server.

The only road between actors on different threads, processes and machines
(see docs/bridge.md). Built on the public API of `noetl_actors.supervision`;
every use of nats-py's internals is in `_nats_internals`.
"""

from noetl_actors.bridge._auth import ServerAuth as ServerAuth
from noetl_actors.bridge._auth import User as User
from noetl_actors.bridge._auth import new_user_key as new_user_key
from noetl_actors.bridge._bridge import Bridge as Bridge
from noetl_actors.bridge._bridge_actor import BridgeActor as BridgeActor
from noetl_actors.bridge._codec import SCHEMA_VERSION as SCHEMA_VERSION
from noetl_actors.bridge._codec import SCHEMA_VERSION_KEY as SCHEMA_VERSION_KEY
from noetl_actors.bridge._codec import decode as decode
from noetl_actors.bridge._codec import encode as encode
from noetl_actors.bridge._context import Context as Context
from noetl_actors.bridge._context import find_context as find_context
from noetl_actors.bridge._context import use_context as use_context
from noetl_actors.bridge._core import BridgeStatistics as BridgeStatistics
from noetl_actors.bridge._delivery import Delivery as Delivery
from noetl_actors.bridge._delivery import JsMetadata as JsMetadata
from noetl_actors.bridge._delivery import PubAck as PubAck
from noetl_actors.bridge._errors import is_auth_error as is_auth_error
from noetl_actors.bridge._kv import Entry as Entry
from noetl_actors.bridge._kv import KeyValue as KeyValue
from noetl_actors.bridge._link import LinkState as LinkState
from noetl_actors.bridge._options import ConnectOptions as ConnectOptions
from noetl_actors.bridge._roles import Role as Role
from noetl_actors.bridge._roles import permissions as permissions
from noetl_actors.bridge._roles import render_roles as render_roles
from noetl_actors.bridge._server import EmbeddedNatsServer as EmbeddedNatsServer
from noetl_actors.bridge._server import default_state_dir as default_state_dir
from noetl_actors.bridge._server import find_nats_server as find_nats_server
from noetl_actors.bridge._subjects import DEAD_LETTER_SUBJECT as DEAD_LETTER_SUBJECT
from noetl_actors.bridge._subjects import Subject as Subject
from noetl_actors.bridge._subjects import SubjectKind as SubjectKind
from noetl_actors.bridge._subjects import check_token as check_token
from noetl_actors.bridge._subjects import command_subject as command_subject
from noetl_actors.bridge._subjects import event_subject as event_subject
from noetl_actors.bridge._subjects import parse_subject as parse_subject
from noetl_actors.bridge._subscription import Mailbox as Mailbox
from noetl_actors.bridge._subscription import Subscription as Subscription
from noetl_actors.errors import ConnectionLost as ConnectionLost

__all__ = [
    "DEAD_LETTER_SUBJECT",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "Bridge",
    "BridgeActor",
    "BridgeStatistics",
    "ConnectOptions",
    "ConnectionLost",
    "Context",
    "Delivery",
    "EmbeddedNatsServer",
    "Entry",
    "JsMetadata",
    "KeyValue",
    "LinkState",
    "Mailbox",
    "PubAck",
    "Role",
    "ServerAuth",
    "Subject",
    "SubjectKind",
    "Subscription",
    "User",
    "check_token",
    "command_subject",
    "decode",
    "default_state_dir",
    "encode",
    "event_subject",
    "find_context",
    "find_nats_server",
    "is_auth_error",
    "new_user_key",
    "parse_subject",
    "permissions",
    "render_roles",
    "use_context",
]
