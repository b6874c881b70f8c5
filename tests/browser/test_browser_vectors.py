"""The browser client's JavaScript, run in Chromium, reproduces every published vector: all of
RFC 9605 Appendix C that applies to suite 0x0004, and every vector of docs/PROTOCOL.md."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.web.app import STRICT_CSP
from tests.browser.conftest import TEST_PAGE, E2EEPage, load_vectors

RFC = load_vectors("rfc9605_appendix_c.json")
PROTOCOL = load_vectors("protocol_vectors.json")


async def test_the_modules_load_under_the_strict_policy(e2ee: E2EEPage) -> None:
    async with aiohttp.ClientSession() as http:
        for path in (TEST_PAGE, "/static/e2ee/test.js", "/static/e2ee/sframe.js"):
            async with http.get(e2ee.origin + path) as response:
                assert response.status == 200, path
                assert response.headers["Content-Security-Policy"] == STRICT_CSP
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                if path.endswith(".js"):
                    assert "javascript" in response.content_type
        async with http.get(e2ee.origin + "/static/e2ee/") as response:
            assert response.status in (403, 404)  # no directory listing
        async with http.get(e2ee.origin + "/static/../app.py") as response:
            assert response.status in (403, 404)
    # The policy is in force: the modules above ran, and an inline script is refused.
    refused = await e2ee.run(
        """
        const violation = new Promise((resolve) => document.addEventListener(
          'securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true }));
        const script = document.createElement('script');
        script.textContent = 'globalThis.inlineRan = true';
        document.head.append(script);
        return [await violation, globalThis.inlineRan === true];
        """
    )
    assert refused == ["script-src-elem", False]
    assert e2ee.console_errors, "Chromium reports the refused script"
    e2ee.console_errors.clear()


async def test_rfc9605_header_vectors(e2ee: E2EEPage) -> None:
    """Every C.1 case encodes to the RFC's bytes and decodes back, and a non-minimal encoding of
    the same values is refused."""
    assert len(RFC["header"]) == 289
    failures = await e2ee.run(
        """
        const bad = [];
        for (const v of arg) {
          const kid = BigInt(v.kid), ctr = BigInt(v.ctr);
          const header = x(c.header.encodeHeader(kid, ctr));
          const back = c.header.decodeHeader(h(v.header + 'ff'));
          if (header !== v.header || back.kid !== kid || back.ctr !== ctr
              || back.length !== v.header.length / 2) bad.push(v);
        }
        for (const nonMinimal of ['8000', '880007', '90000a07', '8f0001ff']) {
          try { c.header.decodeHeader(h(nonMinimal)); bad.push(nonMinimal); }
          catch (e) { if (!(e instanceof c.errors.SFrameError)) bad.push(String(e)); }
        }
        return bad;
        """,
        RFC["header"],
    )
    assert failures == []


async def test_rfc9605_sframe_vector_for_suite_0x0004(e2ee: E2EEPage) -> None:
    (vector,) = [v for v in RFC["sframe"] if v["cipher_suite"] == "0x0004"]
    got = await e2ee.run(
        """
        const v = arg, kid = BigInt(v.kid), ctr = BigInt(v.ctr), base = h(v.base_key);
        const params = c.suites.suiteParams(0x0004);
        const { key, salt } = await c.kdf.deriveKeySalt(params, kid, base);
        const ct = await c.sframe.encrypt(0x0004, base, kid, ctr, h(v.metadata), h(v.pt));
        const pt = await c.sframe.decrypt(0x0004, base, ct, h(v.metadata));
        let tampered;
        try {
          await c.sframe.decrypt(0x0004, base, ct, h(v.metadata + '00'));
        } catch (e) { tampered = e.message; }
        return {
          sframe_key_label: x(c.kdf.keyLabel(params, kid)),
          sframe_salt_label: x(c.kdf.saltLabel(params, kid)),
          sframe_secret: x(await c.kdf.hkdfExtract(new Uint8Array(0), base)),
          sframe_key: x(key), sframe_salt: x(salt),
          nonce: x(c.sframe.frameNonce(salt, ctr)),
          aad: x(c.bytes.concat(c.header.encodeHeader(kid, ctr), h(v.metadata))),
          ct: x(ct), pt: x(pt), tampered,
        };
        """,
        vector,
    )
    for name in (
        "sframe_key_label",
        "sframe_salt_label",
        "sframe_secret",
        "sframe_key",
        "sframe_salt",
        "nonce",
        "aad",
        "ct",
        "pt",
    ):
        assert got[name] == vector[name], name
    assert got["tampered"] == "An encrypted media frame was rejected: authentication failed."


async def test_other_cipher_suites_are_refused_by_name(e2ee: E2EEPage) -> None:
    refusals = await e2ee.run(
        """
        const out = {};
        for (const suite of [0x0001, 0x0002, 0x0003, 0x0005]) {
          try { new c.sframe.SFrameContext(suite); out[suite] = 'accepted'; }
          catch (e) { out[suite] = e.message; }
        }
        return out;
        """
    )
    for suite, message in refusals.items():
        assert message == (
            f"An encrypted media frame was rejected: cipher suite 0x{int(suite):04x} is not "
            "supported: this client implements only 0x0004 (AES_128_GCM_SHA256_128)."
        )


async def test_protocol_kid_layout(e2ee: E2EEPage) -> None:
    got = await e2ee.run(
        """
        return arg.map((v) => {
          const id = new c.kid.KeyId(v.sender_index, v.generation, v.ratchet_step);
          const back = c.kid.KeyId.parse(BigInt(v.kid));
          return ['0x' + id.kid.toString(16).padStart(16, '0'),
                  [back.senderIndex, back.generation, back.ratchetStep]];
        });
        """,
        PROTOCOL["kid_layout"],
    )
    for v, (kid, fields) in zip(PROTOCOL["kid_layout"], got, strict=True):
        assert kid == v["kid"]
        assert fields == [v["sender_index"], v["generation"], v["ratchet_step"]]


async def test_protocol_protected_frames(e2ee: E2EEPage) -> None:
    """V.2: one send context protects the three frames in order (CTR 0, 1, 2) to exactly the
    vector's bytes, and a receive context unprotects them."""
    profile = PROTOCOL["sframe_profile"]
    got = await e2ee.run(
        """
        const p = arg, kid = BigInt(p.kid), base = h(p.base_key);
        const { key, salt } = await c.kdf.deriveKeySalt(c.suites.suiteParams(0x0004), kid, base);
        const send = new c.sframe.SFrameContext(0x0004);
        const receive = new c.sframe.SFrameContext(0x0004);
        await send.addSendKey(kid, base);
        await receive.addReceiveKey(kid, base);
        const frames = [];
        for (const f of p.frames) {
          const seal = (metadata, plaintext) => send.encrypt(kid, metadata, plaintext);
          const sealed = await c.prefix.protect(f.codec, h(f.frame), seal);
          const open = (sframe, metadata) => receive.decrypt(sframe, metadata);
          const back = await c.prefix.unprotect(f.codec, sealed, open);
          frames.push({ nonce: x(c.sframe.frameNonce(salt, BigInt(f.ctr))),
                        protected: x(sealed), frame: x(back) });
        }
        return { sframe_key: x(key), sframe_salt: x(salt), frames };
        """,
        profile,
    )
    assert got["sframe_key"] == profile["sframe_key"]
    assert got["sframe_salt"] == profile["sframe_salt"]
    for vector, frame in zip(profile["frames"], got["frames"], strict=True):
        assert frame == {k: vector[k] for k in ("nonce", "protected", "frame")}, vector["name"]


async def test_protocol_ratchet(e2ee: E2EEPage) -> None:
    steps = PROTOCOL["ratchet"]["steps"]
    got = await e2ee.run(
        """
        const params = c.suites.suiteParams(0x0004);
        const out = [arg[0]];
        for (let i = 1; i < arg.length; i++) {
          out.push(x(await c.kdf.ratchet(params, h(out[i - 1]))));
        }
        return out;
        """,
        steps,
    )
    assert got == steps


async def test_protocol_key_transport_message_and_hpke_intermediates(e2ee: E2EEPage) -> None:
    """V.4: the binding, HPKE's shared secret, key and base nonce, the ciphertext, the signed
    message and its text form, from the vector's fixed keys; the recipient then opens it."""
    v = PROTOCOL["key_transport"]
    got: dict[str, Any] = await e2ee.run(
        """
        const v = arg;
        const sender = await c.keys.MeetingKeys.fromPrivateBytesForTests(
          h(v.sender_x25519_private), h(v.sender_ed25519_private));
        const recipient = await c.keys.MeetingKeys.fromPrivateBytesForTests(
          h(v.recipient_x25519_private), h(v.recipient_ed25519_private));
        const keyId = new c.kid.KeyId(v.sender_index, v.generation, v.ratchet_step);
        const binding = new c.transport.Binding({
          roomId: v.room_id, senderId: v.sender_id, recipientId: v.recipient_id,
          recipientKey: recipient.public().x25519, suite: 0x0004, keyId });
        const ephemeralPrivateKeyForTests = h(v.ephemeral_x25519_private);
        const { enc, sharedSecret } = await c.hpke.encap(
          recipient.public().x25519, { ephemeralPrivateKeyForTests });
        const { key, baseNonce } = await c.hpke.keySchedule(sharedSecret, binding.hpkeInfo());
        const sealed = await c.hpke.seal(recipient.public().x25519, binding.hpkeInfo(),
          new Uint8Array(0), h(v.base_key), { ephemeralPrivateKeyForTests });
        const senderKey = new c.senderkeys.SenderKey(keyId, 0x0004, h(v.base_key));
        const message = await c.transport.sealSenderKey(senderKey, {
          roomId: v.room_id, senderId: v.sender_id, senderKeys: sender,
          recipientId: v.recipient_id, recipient: recipient.public(),
          ephemeralPrivateKeyForTests });
        const parsed = c.transport.parseMessage(message);
        const receiver = new c.transport.KeyReceiver({
          roomId: v.room_id, participantId: v.recipient_id, keys: recipient });
        const roster = new Map([[v.sender_id,
          new c.keys.RosterEntry(v.sender_id, v.sender_index, sender.public())]]);
        const opened = await receiver.open(c.transport.messageFromText(v.message_text), roster);
        return {
          sender_x25519_public: x(sender.public().x25519),
          sender_ed25519_public: x(sender.public().ed25519),
          recipient_x25519_public: x(recipient.public().x25519),
          recipient_ed25519_public: x(recipient.public().ed25519),
          binding: x(binding.encode()), hpke_info: x(binding.hpkeInfo()),
          hpke_enc: x(enc), hpke_shared_secret: x(sharedSecret),
          hpke_key: x(key), hpke_base_nonce: x(baseNonce),
          hpke_ct: x(sealed.ct), sealed_enc: x(sealed.enc),
          signature: x(parsed.signature),
          message: x(message), message_text: c.transport.messageToText(message),
          opened_key: x(opened.baseKey), opened_kid: opened.kid.toString(16),
        };
        """,
        v,
    )
    for name in (
        "sender_x25519_public",
        "sender_ed25519_public",
        "recipient_x25519_public",
        "recipient_ed25519_public",
        "binding",
        "hpke_info",
        "hpke_enc",
        "hpke_shared_secret",
        "hpke_key",
        "hpke_base_nonce",
        "hpke_ct",
        "signature",
        "message",
        "message_text",
    ):
        assert got[name] == v[name], name
    assert got["sealed_enc"] == v["hpke_enc"]
    assert got["opened_key"] == v["base_key"]
    assert got["opened_kid"] == "20000010003"


async def test_protocol_security_code(e2ee: E2EEPage) -> None:
    v = PROTOCOL["security_code"]
    got = await e2ee.run(
        """
        const roster = arg.roster.map((e) => [e.participant_id,
          new c.keys.PublicKeys(h(e.x25519_public), h(e.ed25519_public))]);
        const input = c.code.securityCodeInput(roster);
        return { input: x(input), sha256: x(await c.bytes.sha256(input)),
                 code: await c.code.securityCode(roster),
                 reversed: await c.code.securityCode([...roster].reverse()) };
        """,
        v,
    )
    expected = {"input": v["input"], "sha256": v["sha256"], "code": v["code"]}
    assert got == {**expected, "reversed": v["code"]}


async def test_protocol_key_announcement(e2ee: E2EEPage) -> None:
    v = PROTOCOL["key_announcement"]
    got = await e2ee.run(
        """
        const v = arg;
        const keys = await c.keys.MeetingKeys.fromPrivateBytesForTests(
          h(v.x25519_private), h(v.ed25519_private));
        const made = await c.announce.announce(keys, v.room_id, v.participant_id, v.sender_index);
        const parsed = c.announce.KeyAnnouncement.fromJson(v.json);
        return {
          x25519_public: x(keys.public().x25519), ed25519_public: x(keys.public().ed25519),
          statement: x(c.announce.statement(v.room_id, v.participant_id, v.sender_index,
                                            keys.public())),
          signature: x(made.signature), json: made.toJson(),
          verifies: await parsed.verifies(v.room_id, v.participant_id, v.sender_index),
          other_index: await parsed.verifies(v.room_id, v.participant_id, v.sender_index + 1),
          other_room: await parsed.verifies('other', v.participant_id, v.sender_index),
        };
        """,
        v,
    )
    for name in ("x25519_public", "ed25519_public", "statement", "signature", "json"):
        assert got[name] == v[name], name
    assert (got["verifies"], got["other_index"], got["other_room"]) == (True, False, False)
