// A route map like the ones the contracts issue will generate from an app: the items
// example (examples/items/app.py). Interfaces on purpose: they have no index
// signature, and the client's type parameters must accept them.

export interface CreateItem {
  name: string;
}

export interface ItemRef {
  id: number;
}

export interface Item {
  id: number;
  name: string;
}

export interface Requests {
  list_items: { data: null; reply: Item[] };
  get_item: { data: ItemRef; reply: Item };
  create_item: { data: CreateItem; reply: Item };
  delete_item: { data: ItemRef; reply: ItemRef };
  search: { data: { q: string } | null; reply: Item[] };
}

export interface Events {
  welcome: { connection: string };
  create_item: Item;
  delete_item: ItemRef;
}
