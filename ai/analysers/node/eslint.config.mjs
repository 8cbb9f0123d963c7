// The fixed ESLint configuration of the assistant's JavaScript/TypeScript analyses. Rules are
// grouped by the analysis that reports them (ai/analysers/javascript.py maps rule ids to
// complexity, security, performance or correctness); no project's own config is read.
import security from 'eslint-plugin-security'
import tsParser from '@typescript-eslint/parser'

const SCRIPT = ['**/*.js', '**/*.mjs', '**/*.cjs', '**/*.jsx']
const TYPED = ['**/*.ts', '**/*.tsx', '**/*.mts', '**/*.cts']

export default [
  {
    files: SCRIPT,
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module', parserOptions: { ecmaFeatures: { jsx: true } } }
  },
  {
    files: TYPED,
    languageOptions: { parser: tsParser, parserOptions: { ecmaFeatures: { jsx: true } } }
  },
  {
    files: [...SCRIPT, ...TYPED],
    plugins: { security },
    rules: {
      // complexity
      complexity: ['warn', 10],
      'max-depth': ['warn', 4],
      'max-nested-callbacks': ['warn', 3],
      'max-params': ['warn', 5],
      'max-statements': ['warn', 30],
      // security
      ...security.configs.recommended.rules,
      'no-eval': 'error',
      'no-implied-eval': 'error',
      'no-new-func': 'error',
      'no-script-url': 'error',
      // performance
      'no-await-in-loop': 'warn',
      'no-loop-func': 'warn',
      // correctness
      'no-unreachable': 'error',
      'no-dupe-keys': 'error',
      'no-unused-vars': 'warn',
      'no-constant-condition': 'warn',
      'no-self-compare': 'warn',
      eqeqeq: 'warn'
    }
  }
]
