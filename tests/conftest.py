"""Test-suite wide settings."""

import pytest

# Show values in failures of the shared backend contract suite.
pytest.register_assert_rewrite("tests.backends.contract")
