// Parses each query read from stdin (a JSON array of {name, text}) with
// Microsoft's Kusto.Language parser and prints, as JSON, each query's syntax
// errors: [{name, errors: [{message, start, line}]}].
require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.js');

const input = require('fs').readFileSync(0, 'utf8');
const results = JSON.parse(input).map(({ name, text }) => {
  const diagnostics = Kusto.Language.KustoCode.Parse(text).GetDiagnostics();
  const errors = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    errors.push({
      message: d.Message,
      start: d.Start,
      line: text.slice(0, d.Start).split('\n').length,
    });
  }
  return { name, errors };
});
process.stdout.write(JSON.stringify(results));
