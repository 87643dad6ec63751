/**
 * RequestTable holds a connection's active requests by id (1-65535). A web server that does
 * not multiplex uses one id over and over (nginx: 1); a Map would rebuild its hash table every
 * other request as that id is added and deleted. Here an array indexed by id answers lookups
 * (its slots are cleared, never deleted) and a short dense list holds the active values.
 */
export class RequestTable<T> {
  readonly #slots: (T | undefined)[] = [];
  readonly #active: T[] = [];

  /** size is the number of active ids. */
  get size(): number {
    return this.#active.length;
  }

  /** get is what `id` holds, or undefined when it is not active. */
  get(id: number): T | undefined {
    return this.#slots[id];
  }

  /** has tells whether `id` is active. */
  has(id: number): boolean {
    return this.#slots[id] !== undefined;
  }

  /** set makes `id` active with `value`, replacing what it held. */
  set(id: number, value: T): void {
    const old = this.#slots[id];
    if (old !== undefined) this.#active.splice(this.#active.indexOf(old), 1);
    this.#slots[id] = value;
    this.#active.push(value);
  }

  /** deleteIf makes `id` inactive if `value` is what it holds. */
  deleteIf(id: number, value: T): void {
    if (this.#slots[id] !== value) return;
    this.#slots[id] = undefined;
    const active = this.#active;
    if (active.length === 1) active.pop();
    else active.splice(active.indexOf(value), 1);
  }

  /** first is the earliest begun active value (the only one, when size is 1), or undefined. */
  first(): T | undefined {
    return this.#active[0];
  }

  /** values is a snapshot of the active values, in the order they were begun. */
  values(): T[] {
    return this.#active.slice();
  }

  /** clear makes every id inactive. */
  clear(): void {
    this.#slots.length = 0;
    this.#active.length = 0;
  }
}
