// The participant's media: one peer connection to the room's relay worker (docs/PROTOCOL.md
// section 6, "Media negotiation"), as bot/client/media.py.
//
// The client offers once: one sendonly Opus line and one sendonly VP8 line, present even
// without a microphone or camera, so that either can be switched on later (replaceTrack on the
// same sender) without the offer the relay would not take. After that only the relay offers,
// to add or stop the other participants' tracks. Every frame sent or received goes through the
// frame worker (frames.js): encrypted before packetization, decrypted before decoding.
// ICE servers come from configuration only; there are none by default and never a public one.

const CODECS = Object.freeze({
  // VP8 and Opus only: the clear-prefix profile (section 2) covers these. RTX is VP8's
  // retransmission stream, not a codec of its own.
  audio: (c) => c.mimeType.toLowerCase() === "audio/opus",
  video: (c) => ["video/vp8", "video/rtx"].includes(c.mimeType.toLowerCase()),
});
const GATHERING_TIMEOUT_MS = 5000;

// RTP header extensions this client negotiates, with the ids the relay's own offers use
// (aiortc's defaults): ids must not change within a session (RFC 8285 section 6), and a
// browser refuses a relay re-offer that renumbers one. abs-send-time is what the relay's
// bandwidth estimate (REMB) is measured from. Every other extension is left out, of this
// client's offer and of the relay's: the audio level in particular, which travels in clear
// and would tell the relay who speaks when (docs/THREAT_MODEL.md: it is not sent).
export const EXTENSION_IDS = Object.freeze({
  "urn:ietf:params:rtp-hdrext:sdes:mid": 1,
  "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 3,
});

// The description with its a=extmap lines renumbered (or dropped) by EXTENSION_IDS.
export function withRelayExtensionIds(sdp) {
  const lines = sdp.split("\r\n").flatMap((line) => {
    const match = /^a=extmap:\d+(\/\w+)? (\S+)(.*)$/.exec(line);
    if (match === null) return [line];
    const [, direction = "", uri, rest] = match;
    const id = Object.hasOwn(EXTENSION_IDS, uri) ? EXTENSION_IDS[uri] : null;
    return id === null ? [] : [`a=extmap:${id}${direction} ${uri}${rest}`];
  });
  return lines.join("\r\n");
}

// The relay's offer without stream ids on its inactive lines: a line it stopped (someone
// left) keeps naming that participant's stream, and when the participant comes back a new
// line names it again, which browsers refuse as a duplicate msid. An inactive line carries
// nothing, so what it names does not matter.
export function withoutStoppedStreams(sdp) {
  const sections = sdp.split(/\r\n(?=m=)/);
  return sections
    .map((section) => {
      if (!section.startsWith("m=") || !/\r\na=inactive(\r\n|$)/.test(section)) return section;
      const kept = section.split("\r\n").filter((l) => !/^a=(msid:|ssrc:\d+ msid:)/.test(l));
      return kept.join("\r\n");
    })
    .join("\r\n");
}

// Video keeps its resolution and gives way in frame rate and quality when bandwidth is short.
// Chromium otherwise picks a resolution from the bandwidth it has when the camera's first frame
// is encoded, often its 300 kbit/s start rate before the relay's first REMB has arrived, and
// climbs back from 360 px only as its quality scaler allows (over 15 s, the tests saw). The
// relay's REMB gives the estimate the uplink's real capacity within a second, so full
// resolution is affordable at once; a screen share, on the same sender, wants it anyway.
async function keepResolution(sender) {
  try {
    const parameters = sender.getParameters();
    parameters.degradationPreference = "maintain-resolution";
    await sender.setParameters(parameters);
  } catch {
    // A browser without it keeps its own choice: a smaller picture, not a broken call.
  }
}

// The codecs this browser can send for `kind`, restricted to the profile's.
export function preferredCodecs(kind) {
  return RTCRtpSender.getCapabilities(kind).codecs.filter(CODECS[kind]);
}

export class MediaSession {
  // `iceServers` from configuration (empty by default); `onTrack(owner, kind, track)` for each
  // track the relay forwards, `owner` being the participant id its msid names.
  constructor({ frames, iceServers = [], onTrack }) {
    this._frames = frames;
    this._onTrack = onTrack;
    this.pc = new RTCPeerConnection({
      iceServers,
      bundlePolicy: "max-bundle",
      ...frames.rtcConfiguration,
    });
    this._senders = {};
    this._owners = new Map(); // mid -> participant id
    // mid -> frames the line had decoded before its present owner's track (a line the relay
    // reused: its statistics go on counting from the last owner's).
    this._before = new Map();
    this.pc.addEventListener("track", (event) => this._track(event));
    this.pc.addEventListener("connectionstatechange", () => {
      performance.mark(`conclave:media-${this.pc.connectionState}`);
    });
  }

  // The one offer: `tracks` is {audio, video}, each a MediaStreamTrack or null.
  async offer(tracks) {
    for (const kind of ["audio", "video"]) {
      const transceiver = this.pc.addTransceiver(tracks[kind] ?? kind, { direction: "sendonly" });
      transceiver.setCodecPreferences(preferredCodecs(kind));
      this._frames.attachSender(transceiver.sender, kind);
      this._senders[kind] = transceiver.sender;
    }
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription({ type: "offer", sdp: withRelayExtensionIds(offer.sdp) });
    await keepResolution(this._senders.video);
    return this._described();
  }

  acceptAnswer(answer) {
    return this.pc.setRemoteDescription(answer);
  }

  // The relay renegotiates when people come and go.
  async answerOffer(offer) {
    const sdp = withRelayExtensionIds(withoutStoppedStreams(offer.sdp));
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    await this.pc.setLocalDescription();
    return this._described();
  }

  // What this client sends on one line: a track, or null for nothing.
  setTrack(kind, track) {
    return this._senders[kind]?.replaceTrack(track ?? null);
  }

  // The relay takes no trickled candidates: every one must be in the description.
  async _described() {
    if (this.pc.iceGatheringState !== "complete") {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, GATHERING_TIMEOUT_MS);
        const done = () => {
          if (this.pc.iceGatheringState !== "complete") return;
          clearTimeout(timer);
          this.pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        };
        this.pc.addEventListener("icegatheringstatechange", done);
      });
    }
    const { type, sdp } = this.pc.localDescription;
    return { type, sdp };
  }

  _track({ track, streams, receiver, transceiver }) {
    performance.mark(`conclave:track-${track.kind}`);
    // The relay names each forwarded stream after its participant (msid "<id> <id>-<kind>").
    const owner = streams[0]?.id ?? "";
    this._owners.set(transceiver.mid, owner);
    // Read now: the relay sends the new owner's frames only once this page has answered.
    this._before.set(transceiver.mid, 0);
    receiver.getStats().then((stats) => {
      stats.forEach((s) => {
        if (s.type === "inbound-rtp") this._before.set(transceiver.mid, s.framesDecoded ?? 0);
      });
    });
    this._frames.attachReceiver(receiver, track.kind, owner);
    this._onTrack(owner, track.kind, track);
  }

  // Per participant id: video frames decoded and the audio level (0..1) of what it sends.
  async receiving() {
    const found = new Map();
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const owner = this._owners.get(s.mid);
      if (owner === undefined) return;
      const mine = found.get(owner) ?? { framesDecoded: 0, audioLevel: 0, frameHeight: 0 };
      if (s.kind === "video") {
        const before = this._before.get(s.mid) ?? 0;
        mine.framesDecoded += Math.max(0, (s.framesDecoded ?? 0) - before);
        mine.frameHeight = Math.max(mine.frameHeight, s.frameHeight ?? 0);
      } else {
        mine.audioLevel = Math.max(mine.audioLevel, s.audioLevel ?? 0);
      }
      found.set(owner, mine);
    });
    return found;
  }

  // What goes out, per kind: the negotiated codec and the track on the sender, if any.
  async sending() {
    const stats = await this.pc.getStats();
    const found = {};
    let estimate = null;
    stats.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate !== undefined) {
        estimate = s.availableOutgoingBitrate;
      }
      if (s.type !== "outbound-rtp") return;
      const codec = stats.get(s.codecId);
      found[s.kind] = {
        mimeType: codec?.mimeType ?? null,
        frameHeight: s.frameHeight ?? 0,
        bytesSent: s.bytesSent ?? 0,
        at: s.timestamp,
        limitedBy: s.qualityLimitationReason ?? null,
      };
    });
    for (const kind of ["audio", "video"]) {
      const track = this._senders[kind]?.track ?? null;
      // What the camera captures: the most a sender can send, once bandwidth allows.
      const captureHeight = track?.getSettings().height ?? null;
      found[kind] = { ...found[kind], track: track?.label ?? null, captureHeight };
    }
    const described = this.pc.currentLocalDescription?.sdp ?? "";
    const extensions = new Set(described.match(/(?<=^a=extmap:\d+(\/\w+)? )\S+/gm));
    return {
      ...found,
      estimate, // the browser's send-side bandwidth estimate, bit/s
      lines: this.pc.getTransceivers().length,
      config: this.pc.getConfiguration(),
      extensions: [...extensions].sort(),
    };
  }

  close() {
    this.pc.close();
  }
}
