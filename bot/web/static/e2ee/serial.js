// Runs async operations on shared state one at a time, in call order. The Python client's key
// state changes synchronously; here WebCrypto makes every step await, and without this a key
// message arriving mid-frame could interleave with a decryption that has checked the state but
// not yet updated it.

export class Serial {
  constructor() {
    this._tail = Promise.resolve();
  }

  run(operation) {
    const result = this._tail.then(() => operation());
    this._tail = result.catch(() => {});
    return result;
  }
}
