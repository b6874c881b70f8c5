// Test-only page (tests/browser/test_browser_bandwidth.py): publishes the fake camera to a
// relay worker, answers the relay's offers, and reports the sender's outbound statistics.
// Plain WebRTC, no end-to-end encryption: what is measured is the relay's bandwidth feedback.

let pc = null;

async function gathered() {
  if (pc.iceGatheringState === "complete") return;
  // The relay takes no trickled candidates: every one must be in the description.
  await new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

async function publish(width, height) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: width }, height: { ideal: height } },
    audio: false,
  });
  const track = stream.getVideoTracks()[0];
  pc = new RTCPeerConnection({ iceServers: [] });
  const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  transceiver.setCodecPreferences(
    codecs.filter((c) => c.mimeType === "video/VP8" || c.mimeType === "video/rtx"),
  );
  await pc.setLocalDescription(await pc.createOffer());
  await gathered();
  const settings = track.getSettings();
  return { sdp: pc.localDescription.sdp, width: settings.width, height: settings.height };
}

async function acceptAnswer(sdp) {
  await pc.setRemoteDescription({ type: "answer", sdp });
}

async function answerOffer(sdp) {
  await pc.setRemoteDescription({ type: "offer", sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered();
  return pc.localDescription.sdp;
}

async function outbound() {
  const stats = await pc.getStats();
  let found = null;
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") found = s;
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
  });
  if (found === null) return null;
  return {
    timestamp: found.timestamp,
    bytesSent: found.bytesSent ?? 0,
    frameHeight: found.frameHeight ?? 0,
    frameWidth: found.frameWidth ?? 0,
    targetBitrate: found.targetBitrate ?? 0,
    qualityLimitationReason: found.qualityLimitationReason ?? "",
    availableOutgoingBitrate: pair?.availableOutgoingBitrate ?? 0,
    connectionState: pc.connectionState,
  };
}

function close() {
  if (pc !== null) pc.close();
}

globalThis.bandwidth = { publish, acceptAnswer, answerOffer, outbound, close };
document.getElementById("status").textContent = "ready";
