"""The page a join link opens, until the browser client exists.

It is honest about what works today and never touches the link's fragment: no script, no form,
nothing that could send the invite key anywhere.
"""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Join a Conclave meeting</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
       padding: 0 1rem; color: #1d1d1f; }}
code, pre {{ background: #f2f2f4; border-radius: 4px; padding: 0.1rem 0.3rem; }}
pre {{ padding: 0.8rem; overflow-x: auto; }}
</style>
</head>
<body>
<h1>You are invited to an end-to-end-encrypted meeting</h1>
<p>The in-browser client is not available yet. For now, join from a terminal with the
Conclave command-line client, giving it the <strong>whole</strong> link from your invitation,
including the part after <code>#</code>:</p>
<pre>conclave join '{base}/j/{room}#…'</pre>
<p>Install it with <code>python3 -m pip install conclave</code> from the Conclave source.</p>
<p>The part after <code>#</code> is your one-time invite key. Your browser did not send it to
this server, and this page does not read it. Do not paste it anywhere else: it works once,
only for you.</p>
</body>
</html>
"""


def render_join_page(base_url: str, room_id: str) -> str:
    return _PAGE.format(base=html.escape(base_url), room=html.escape(room_id))
