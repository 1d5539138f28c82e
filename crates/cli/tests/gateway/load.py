"""Bounded load on the HTTP gateway: N concurrent streaming clients (the
official openai AsyncOpenAI), each sending K requests with its own prompt.

    python load.py GATEWAY_URL TOKEN CLIENTS REQUESTS

The stub upstream echoes the prompt, so an answer that is not the
client's own prompt went to the wrong client. Prints one JSON line:
{"complete", "clean_errors", "wrong", "incomplete", "errors"}.
"""

import asyncio
import json
import sys
import uuid

import openai

base, token, clients, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tally = {"complete": 0, "clean_errors": 0, "wrong": 0, "incomplete": 0, "errors": {}}


async def one_client(i, client):
    for j in range(requests):
        prompt = "client %d request %d nonce %s" % (i, j, uuid.uuid4().hex)
        try:
            stream = await client.chat.completions.create(
                model="pointsman",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                extra_body={"pointsman": {"constraints": {"allowed_models": ["ok", "strong"]}}},
            )
            text, finished = "", False
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finished = finished or chunk.choices[0].finish_reason == "stop"
            if text != prompt:
                tally["wrong" if finished else "incomplete"] += 1
            elif finished:
                tally["complete"] += 1
            else:
                tally["incomplete"] += 1
        except openai.APIError as e:
            tally["clean_errors"] += 1
            kind = type(e).__name__
            tally["errors"][kind] = tally["errors"].get(kind, 0) + 1


async def main():
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=60) as client:
        await asyncio.gather(*(one_client(i, client) for i in range(clients)))


asyncio.run(main())
print(json.dumps(tally))
