"""What convlens keeps on disk: uploads, blobs and datasets, their writing, quota and deletion."""
