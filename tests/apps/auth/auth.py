"""Bearer-token auth for LangGraph Server: the token ``token-<name>`` is the user ``<name>``."""

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("token-"):
        raise Auth.exceptions.HTTPException(status_code=401, detail="not authenticated")
    return {"identity": token.removeprefix("token-")}
