// Talk to Azurite with the official Azure SDK.
//   node blob.mjs <endpoint> create <container>
//   node blob.mjs <endpoint> list <container> <prefix>     (prints one blob name per line)
// <endpoint> is the account URL, e.g. http://127.0.0.1:10000/devstoreaccount1
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";

const [endpoint, command, container, prefix] = process.argv.slice(2);
const account = "devstoreaccount1";
// Azurite's well-known development key (public, documented by Microsoft).
const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const client = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(account, key));
const c = client.getContainerClient(container);
if (command === "create") {
  await c.createIfNotExists();
} else if (command === "list") {
  for await (const blob of c.listBlobsFlat({ prefix: prefix ?? "" })) {
    console.log(blob.name);
  }
} else {
  console.error(`unknown command ${command}`);
  process.exit(2);
}
