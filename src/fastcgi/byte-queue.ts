// The responder's request-side streams (FCGI_STDIN, FCGI_DATA; FastCGI spec §5.3): record contents
// queued by the connection and pulled by gateway.input as an async byte source.

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

interface Waiter {
  resolve(result: IteratorResult<Uint8Array>): void;
  reject(error: unknown): void;
}

/**
 * ByteQueue is one input stream of a request: the connection `push()`es record contents (views
 * of the socket's buffers, never copied), `end()`s it on the empty record, and `BodyInput`
 * pulls chunks through the async-iterator protocol. `buffered` is what the connection's flow
 * control watches; `onConsume` runs after a pull while `notify` is set (the socket is paused
 * for this queue). After `discard()` every chunk is dropped as it arrives. After `fail()`,
 * pulls reject with that error.
 */
export class ByteQueue implements AsyncIterableIterator<Uint8Array> {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #buffered = 0;
  #received = 0;
  #ended = false;
  #failed = false;
  #error: unknown = undefined;
  #discarding = false;
  #waiter: Waiter | null = null;
  /** notify asks for `onConsume` calls after each pull (set by the connection while paused). */
  notify = false;

  /** constructor takes the callback run after a pull while `notify` is set. */
  constructor(private readonly onConsume: () => void) {}

  /** buffered is how many received bytes wait to be pulled. */
  get buffered(): number {
    return this.#buffered;
  }

  /** received is how many bytes were pushed in all (discarded ones included). */
  get received(): number {
    return this.#received;
  }

  /** ended tells whether the stream's end record arrived. */
  get ended(): boolean {
    return this.#ended;
  }

  /** waiting tells whether a pull is pending: the reader waits for the next chunk. */
  get waiting(): boolean {
    return this.#waiter !== null;
  }

  /** failed tells whether `fail()` was called. */
  get failed(): boolean {
    return this.#failed;
  }

  /** discarding tells whether arriving chunks are dropped. */
  get discarding(): boolean {
    return this.#discarding;
  }

  /** push adds one record's content; dropped when discarding or failed. */
  push(chunk: Uint8Array): void {
    this.#received += chunk.length;
    if (this.#discarding || this.#failed) return;
    const waiter = this.#waiter;
    if (waiter !== null && this.#buffered === 0) {
      this.#waiter = null;
      waiter.resolve({ done: false, value: chunk });
      return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** end marks the end of the stream (its empty record arrived). */
  end(): void {
    this.#ended = true;
    const waiter = this.#waiter;
    if (waiter !== null && this.#buffered === 0) {
      this.#waiter = null;
      if (this.#failed) waiter.reject(this.#error);
      else waiter.resolve(DONE);
    }
  }

  /** fail makes every later pull reject with `error` and drops what is buffered. */
  fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#error = error;
    this.#drop();
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      waiter.reject(error);
    }
  }

  /** discard drops what is buffered and every chunk that arrives later; a pending pull sees the end. */
  discard(): void {
    this.#discarding = true;
    this.#drop();
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      waiter.resolve(DONE);
    }
  }

  /** next pulls the next chunk (async-iterator protocol); `done` at the end of the stream. */
  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head]!;
      this.#head += 1;
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      }
      this.#buffered -= chunk.length;
      if (this.notify) this.onConsume();
      return Promise.resolve({ done: false, value: chunk });
    }
    if (this.#failed) return Promise.reject(this.#error);
    if (this.#ended || this.#discarding) return Promise.resolve(DONE);
    const pending = new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
    // After the waiter is set: the connection must see that the reader is waiting (a paused
    // socket has to resume for it).
    if (this.notify) this.onConsume();
    return pending;
  }

  /** Symbol.asyncIterator returns the queue itself: it is consumed once, by one BodyInput. */
  [Symbol.asyncIterator](): this {
    return this;
  }

  #drop(): void {
    this.#chunks = [];
    this.#head = 0;
    const had = this.#buffered;
    this.#buffered = 0;
    if (had > 0 && this.notify) this.onConsume();
  }
}
