"""The Slack DM for an invitation: Block Kit with a link button, and a plain-text fallback."""

from __future__ import annotations

from adapters.slack.message import JOIN_ACTION, escape, invitation_message
from bot.commands.handler import Invitation
from bot.core.models import UserRef
from bot.core.service import MeetingService
from tests.support.fakes import user


async def test_the_button_carries_the_link_and_the_topic_is_escaped(
    service: MeetingService,
) -> None:
    ana = UserRef("slack", "T1", "UANA", "Ana")
    made = await service.create_room(user("hana"), [ana], "Q3 <budget> & plans")
    invitation = Invitation(ana, made.invites[0], made.room)
    message = invitation_message(invitation)
    section, actions, context = message["blocks"]
    assert "Q3 &lt;budget&gt; &amp; plans" in section["text"]["text"]
    assert "invites you" in section["text"]["text"]
    (button,) = actions["elements"]
    assert button["action_id"] == JOIN_ACTION
    assert button["url"] == made.invites[0].link.reveal()
    assert "Invited by Hana" in context["elements"][0]["text"]
    assert "expires" in context["elements"][0]["text"]
    assert message["text"] == escape(invitation.text())  # the fallback carries the link too
    assert message["unfurl_links"] is False
