'use strict';
// The models a store (directory or remote) keeps loaded, by key: releasing them all when the store closes.

async function releaseAll(models) {
  const pending = [...models.values()];
  models.clear();
  for (const model of await Promise.all(pending.map((p) => p.catch(() => null)))) {
    if (model) await model.release().catch(() => {});
  }
}

module.exports = { releaseAll };
