"""The Block Kit direct message that carries one invitation: a "Join securely" button, the
expiry and who invited them, with the plain text as the notification fallback."""

from __future__ import annotations

from typing import Any

from bot.commands import render
from bot.commands.handler import Invitation

JOIN_ACTION = "conclave_join"


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters; a topic must not."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def invitation_message(invitation: Invitation) -> dict[str, Any]:
    """``chat.postMessage`` arguments (without the channel). The link is revealed here, once,
    into the request body; never log what this returns."""
    invite, room = invitation.invite, invitation.room
    headline = render.invitation_headline(
        invite, f"*{escape(room.host_name)}*", f"*{escape(room.topic)}*"
    )
    return {
        "text": escape(invitation.text()),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": JOIN_ACTION,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Join securely"},
                        "url": invite.link.reveal(),
                    }
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Invited by {escape(room.host_name)}. {render.link_terms(invite)}",
                    }
                ],
            },
        ],
        # A preview would make Slack's servers fetch the join page; nothing to gain.
        "unfurl_links": False,
        "unfurl_media": False,
    }
