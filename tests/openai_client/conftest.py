"""What the `openai` client suites share: the server's address and key (set by
scripts/openai-client-test.sh), every check run on both chat models, one client."""

import os

import openai
import pytest

URL = os.environ["HEARTH_URL"]
KEY = os.environ["HEARTH_API_KEY"]
CHATS = ["smollm2", "qwen"]


@pytest.fixture(params=CHATS, scope="module")
def chat(request):
    return request.param


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0, timeout=120)
