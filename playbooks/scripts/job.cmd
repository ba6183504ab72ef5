@echo off
rem ===========================================================================
rem job.cmd NAME FILE [ARGS...]
rem
rem Runs FILE (a .cmd file, or a .vbs/.wsf file run with cscript) as job NAME
rem in the scheduled task Runner-Migration on this server, waits for it, prints
rem its log and returns its exit code. Installed as C:\mig\bin\job.cmd on
rem new-sbs by the step deploy-job-tool.
rem
rem Why a scheduled task: a WinRM session authenticated with NTLM holds no
rem reusable credentials, so a command started over WinRM cannot open
rem \\old-sbs\D$, manage old-sbs's shares or move a mailbox between
rem the two servers (the "double hop"). The task runs as the domain's
rem Administrator with the password Windows stored when the operator created
rem it at the console (step create-job-task), so its jobs can reach the other
rem server.
rem The job also keeps running if the WinRM connection drops: running the
rem same step again waits for the job that is still running instead of
rem starting a second copy. A runner timeout stops this waiting script, not
rem the job: `schtasks /end /tn Runner-Migration` stops the job itself.
rem ===========================================================================
setlocal
set TASK=Runner-Migration
set DIR=C:\mig\jobs
set JOB=%~1
set SRC=%~2
if "%JOB%"=="" goto usage
if "%SRC%"=="" goto usage
if not exist "%DIR%" mkdir "%DIR%"

call :is_running
if "%RUNNING%"=="0" goto start
set CUR=
if exist "%DIR%\current.txt" set /p CUR=<"%DIR%\current.txt"
if /i "%CUR%"=="%JOB%" (
    echo Job %JOB% is still running in task %TASK%: waiting for it instead of starting it again.
    goto wait
)
echo Task %TASK% is busy with job %CUR%: job %JOB% was not started. 1>&2
exit /b 1

:start
rem Arguments after FILE are stored beside the job and passed to it by jobhost.cmd.
set ARGS=
:collect
if "%~3"=="" goto collected
set ARGS=%ARGS% %3
shift /3
goto collect
:collected
if /i "%~x2"==".vbs" goto wrap
if /i "%~x2"==".wsf" goto wrap
if /i "%SRC%"=="%DIR%\%JOB%.cmd" goto ready
copy /y "%SRC%" "%DIR%\%JOB%.cmd" >nul
if errorlevel 1 (
    echo Cannot copy %SRC% to %DIR%. 1>&2
    exit /b 1
)
goto ready
:wrap
> "%DIR%\%JOB%.cmd" echo @cscript //nologo "%SRC%" %%*
:ready
> "%DIR%\%JOB%.args" echo.%ARGS%
if exist "%DIR%\%JOB%.rc" del /q "%DIR%\%JOB%.rc"
> "%DIR%\current.txt" echo %JOB%
schtasks /run /tn "%TASK%" >nul
if errorlevel 1 (
    echo Cannot start the scheduled task %TASK%: create it first, see the step create-job-task. 1>&2
    exit /b 1
)
echo %date% %time% job %JOB% started in task %TASK%

:wait
set TICKS=0
:poll
rem About 30 seconds: Windows 2003 has no sleep command.
ping -n 31 127.0.0.1 >nul
if exist "%DIR%\%JOB%.rc" goto finished
call :is_running
if "%RUNNING%"=="1" goto still
rem The task has stopped; it may have written the exit code in the meantime.
if exist "%DIR%\%JOB%.rc" goto finished
echo Task %TASK% stopped without an exit code for job %JOB%: the server restarted or the task was ended. 1>&2
if exist "%DIR%\%JOB%.log" type "%DIR%\%JOB%.log"
exit /b 1
:still
set /a TICKS+=1
set /a BEAT=TICKS %% 20
if "%BEAT%"=="0" echo %date% %time% job %JOB% still running
goto poll

:finished
if exist "%DIR%\%JOB%.log" type "%DIR%\%JOB%.log"
set RC=1
set /p RC=<"%DIR%\%JOB%.rc"
echo %date% %time% job %JOB% finished with exit code %RC%
exit /b %RC%

:is_running
rem schtasks on Windows 2003 cannot query one task by name: filter the list.
set RUNNING=0
schtasks /query /fo csv | findstr /i /c:"%TASK%" | findstr /i /c:"Running" >nul
if not errorlevel 1 set RUNNING=1
goto :eof

:usage
echo usage: job.cmd NAME FILE [ARGS...] 1>&2
exit /b 2
