// RequestTable: a connection's active requests by id, as the responder uses it (one id reused,
// several multiplexed, ids up to 65535).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RequestTable } from '../../src/fastcgi/request-table.js';

describe('RequestTable', () => {
  test('one id begun and ended over and over', () => {
    const t = new RequestTable<{ n: number }>();
    for (let n = 0; n < 1000; n++) {
      const r = { n };
      t.set(1, r);
      assert.equal(t.size, 1);
      assert.equal(t.get(1), r);
      assert.equal(t.first(), r);
      t.deleteIf(1, r);
      assert.equal(t.size, 0);
      assert.equal(t.has(1), false);
      assert.equal(t.first(), undefined);
    }
  });

  test('multiplexed ids: lookups, begin order, and only the holder ends an id', () => {
    const t = new RequestTable<string>();
    t.set(65535, 'a');
    t.set(2, 'b');
    t.set(300, 'c');
    assert.deepEqual(
      [t.size, t.get(65535), t.get(2), t.get(300), t.get(3)],
      [3, 'a', 'b', 'c', undefined],
    );
    assert.deepEqual(t.values(), ['a', 'b', 'c']);
    t.deleteIf(2, 'not b');
    assert.equal(t.size, 3);
    t.deleteIf(2, 'b');
    assert.deepEqual([t.size, t.has(2), t.first()], [2, false, 'a']);
    const snapshot = t.values();
    t.deleteIf(65535, 'a');
    assert.deepEqual(snapshot, ['a', 'c'], 'values() is a copy');
    assert.deepEqual(t.values(), ['c']);
    t.clear();
    assert.deepEqual([t.size, t.get(300), t.values()], [0, undefined, []]);
  });

  test('setting an active id again replaces its value', () => {
    const t = new RequestTable<string>();
    t.set(7, 'old');
    t.set(7, 'new');
    assert.deepEqual([t.size, t.get(7), t.values()], [1, 'new', ['new']]);
  });
});
