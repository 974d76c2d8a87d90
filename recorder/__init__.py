"""The recording side: a mitmproxy addon (asyncio). Never imports locust or gevent."""
