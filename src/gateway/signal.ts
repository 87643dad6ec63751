// A request's `gateway.signal`, made only when something reads it. An AbortController costs
// about as much as the rest of a small FastCGI request's environ, and most requests are over
// before anyone looks at their signal.

/** kRequestSignal is the environ key under which a front end keeps the {@link RequestSignal} behind `gateway.signal`. */
export const kRequestSignal: unique symbol = Symbol.for('cgi-bridge.requestSignal');

/**
 * RequestSignal is the abort state of one request. The front end calls `abort(reason)` when
 * the client or web server goes away; the pipeline reads `aborted` and `own` (which never
 * fire for anything else); the app reads `gateway.signal`, which also follows every source
 * `link`ed in (a `--timeout`), so a wrapper can add a reason without replacing the property.
 * No AbortController exists until one of them is read.
 */
export class RequestSignal {
  #controller: AbortController | null = null;
  #aborted = false;
  #reason: unknown = undefined;
  // Linked sources: the first (a --timeout, usually the only one) without an array.
  #link: (() => AbortSignal) | null = null;
  #links: (() => AbortSignal)[] | null = null;
  #app: AbortSignal | null = null;

  /** aborted tells whether the front end aborted the request. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** own is the front end's signal alone: it fires only when the client or web server goes away. */
  get own(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** app is what `gateway.signal` shows: {@link own}, and every linked source. */
  get app(): AbortSignal {
    if (this.#app !== null) return this.#app;
    const first = this.#link;
    const links = this.#links;
    if (first === null) this.#app = this.own;
    else if (links === null) this.#app = AbortSignal.any([this.own, first()]);
    else this.#app = AbortSignal.any([this.own, first(), ...links.map((make) => make())]);
    return this.#app;
  }

  /** abort fires the signal (once) with `reason`. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /**
   * link makes `gateway.signal` follow one more source too; `make` is called only when the
   * signal is read. Linked after the app read it, the source joins the signal at once.
   */
  link(make: () => AbortSignal): void {
    if (this.#app !== null) {
      this.#app = AbortSignal.any([this.#app, make()]);
      return;
    }
    if (this.#link === null) this.#link = make;
    else (this.#links ??= []).push(make);
  }

  /**
   * install defines `gateway.signal` on `environ` as an own, enumerable property read through
   * this object (a copy of the environ gets the signal itself), and keeps this object under
   * {@link kRequestSignal}. Assigning `gateway.signal` replaces it with a plain value.
   * Call it on the fresh, empty environ: with the accessor first, every environ shares one
   * chain of hidden classes, and the property costs what a plain value does. (Defined last, on
   * an object that has its forty-odd keys already, it cost more than an AbortController.)
   */
  install(environ: Record<string | symbol, unknown>): void {
    environ[kRequestSignal] = this;
    Object.defineProperty(environ, 'gateway.signal', SIGNAL_PROPERTY);
  }
}

// One getter and setter for every environ, found through `this` (the environ, or anything that
// reads the property through it), so that environs do not each get a shape of their own.
const SIGNAL_PROPERTY: PropertyDescriptor = {
  configurable: true,
  enumerable: true,
  get(this: Record<symbol, unknown>): AbortSignal | undefined {
    const source = this[kRequestSignal];
    return source instanceof RequestSignal ? source.app : undefined;
  },
  set(this: object, value: unknown): void {
    replaceSignal(this, value);
  },
};

/**
 * replaceSignal makes `gateway.signal` on `environ` a plain data property holding `value`:
 * what assigning it does where a front end or wrapper defined it as an accessor.
 */
export function replaceSignal(environ: object, value: unknown): void {
  Object.defineProperty(environ, 'gateway.signal', {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

/** requestSignalOf returns the environ's {@link RequestSignal}, if its front end installed one. */
export function requestSignalOf(environ: object): RequestSignal | undefined {
  const s = (environ as Record<symbol, unknown>)[kRequestSignal];
  return s instanceof RequestSignal ? s : undefined;
}
