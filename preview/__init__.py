"""Live previews and deployments: a project's web app built and served in the sandbox.

- ``spec``: how a project is built and served (detected, or ``icreate.toml``).
- ``relay``: the tiny TCP relay that runs *inside* the sandbox (a standalone script).
- ``process``: one app process in its own network namespace, reached through a Unix socket.
- ``runtime``: the running previews (one per project and environment), live reload, idle stop.
- ``proxy``: the preview origin (``PREVIEW_ORIGIN``): HTTP and WebSocket to the socket.
- ``tickets``: how a signed-in member gets into a private preview without IDE tokens.
- ``builds``: the deployment job (statuses, logs, cancel); ``vercel``: the Vercel target.
"""
