"""An app's API written for other tools: JSON Schema (2020-12) of its types and
routes, from which the AsyncAPI document and the TypeScript declarations are made
(docs/contracts.md)."""

from __future__ import annotations

from .._errors import SchemaError as SchemaError
from ._source import AppSource as AppSource
from .asyncapi import asyncapi as asyncapi
from .asyncapi import asyncapi_json as asyncapi_json
from .asyncapi import asyncapi_yaml as asyncapi_yaml
from .routes import AppSchemas as AppSchemas
from .routes import EventSchema as EventSchema
from .routes import RouteSchema as RouteSchema
from .routes import RouteTable as RouteTable
from .routes import schemas_for as schemas_for
from .schema import DIALECT as DIALECT
from .schema import SchemaSet as SchemaSet
from .schema import json_schema as json_schema
from .schema import schema_set as schema_set
from .typescript import typescript as typescript

__all__ = [
    "DIALECT",
    "AppSchemas",
    "EventSchema",
    "RouteSchema",
    "RouteTable",
    "SchemaError",
    "SchemaSet",
    "json_schema",
    "schema_set",
    "schemas_for",
    "asyncapi",
    "asyncapi_json",
    "asyncapi_yaml",
    "typescript",
    "AppSource",
]
