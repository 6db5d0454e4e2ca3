from tests.modelstore.conftest import make_store  # noqa: F401  (the store-building fixture)
