"""The baseline of benchmarks/replay_throughput.py: what a Locust user writes by hand.

The same eight requests as the recording that the benchmark generates, in the same
order, with the same headers, bodies and stats names, from one ``FastHttpUser`` with
no think time. Headers and bodies are module constants (built once, as a careful
hand-written locustfile would have them); no status checking beyond Locust's default.
The item that ``POST /api/items`` creates is correlated by hand, as a Locust user does
it: its id and token are read from the JSON answer (``resp.json()``) and put into the
next requests' URL, ``X-Token`` header and cart body.

    locust -f benchmarks/plain_locustfile.py --headless --host http://127.0.0.1:8080 -u 20 -r 20 -t 15s
"""

from locust import FastHttpUser, constant, task

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

PAGE = {
    "User-Agent": UA,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "same-origin",
}
API = {
    "User-Agent": UA,
    "Accept": "application/json, text/plain, */*",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "X-Requested-With": "XMLHttpRequest",
    "Referer": "http://shop.example/",
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "same-origin",
}
API_JSON = {**API, "Content-Type": "application/json", "Origin": "http://shop.example"}
PAGE_FORM = {**PAGE, "Content-Type": "application/x-www-form-urlencoded", "Origin": "http://shop.example",
             "Referer": "http://shop.example/cart", "Cache-Control": "max-age=0"}

NEW_ITEM = b'{"name":"Desk lamp","price":1999,"tags":["home","light"]}'
CART = '{"item_id":%d,"quantity":2,"options":{"size":"M","colour":"blue"}}'
CHECKOUT = b"name=Ada+Lovelace&email=ada%40example.com&address=12+Analytical+Way&country=GB&accept_terms=on"


class ShopUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def shop(self) -> None:
        c = self.client
        c.get("/", headers=PAGE, name="/")
        c.get("/api/items?page=2&sort=price", headers=API, name="/api/items")
        c.get("/items/17", headers=PAGE, name="/items/{id}")
        item = c.post("/api/items", data=NEW_ITEM, headers=API_JSON, name="/api/items").json()["item"]
        item_id, token = item["id"], item["token"]
        c.get(f"/api/items/{item_id}", headers={**API, "X-Token": token}, name="/api/items/{id}")
        c.post("/api/cart", data=(CART % item_id).encode(), headers={**API_JSON, "X-Token": token}, name="/api/cart")
        c.post("/checkout", data=CHECKOUT, headers=PAGE_FORM, name="/checkout")
        c.get("/orders/4242?tab=summary", headers=PAGE, name="/orders/{id}")
