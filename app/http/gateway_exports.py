"""External gateway exports (site admins): external-users.xlsx (ID, Title, Surname, First Name, Email,
Account Created, ADR, Access, Last Login, Pupils, Licence Types; `?licenceType=` keeps the external users
holding that licence type) and pupils-without-licence.xlsx (learners with no holder of `?licenceType=`,
required, with the licence types they do have). Rows and columns: app.services.reports; served like every
export (app.http.exports): a sheet holds at most 1,048,576 rows, past that the export is refused, never cut.
"""

from __future__ import annotations

from starlette.routing import Route

from app.http.exports import gateway_endpoint
from app.services.reports import EXTERNAL_USERS, PUPILS_WITHOUT_LICENCE

routes = [
    Route("/exports/external-users.xlsx", gateway_endpoint(EXTERNAL_USERS), methods=["GET"]),
    Route("/exports/pupils-without-licence.xlsx", gateway_endpoint(PUPILS_WITHOUT_LICENCE), methods=["GET"]),
]
