import pytest
from model_helpers import POSITIONALS


@pytest.fixture(params=POSITIONALS)
def positional(request):
    return request.param
