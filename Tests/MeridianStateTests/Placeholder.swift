// Tests of the state store on SQLite in a temporary folder.
