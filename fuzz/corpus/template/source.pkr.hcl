source "null" "golden" {
  communicator = "none"
}
